"""How much white-cell-type information a backbone's pooled features carry: 5-fold logistic regression over PBC's 8
classes on the same preprocessed cells (a cell table from ``python -m training wbc cells``), for the bundled B3's
features (``python -m training wbc features``) and for ImageNet EfficientNet-B4 (``../shared/tools/imagenet-b4``),
pooled at ``block7a_project_bn`` (its block7b is missing upstream). Needs scikit-learn (a test dependency).

  python benchmarks/wbc_feature_probe.py --cells cells.npz --features feats.npy --b4-weights b4.weights.h5

2026-12-01, 1,200 PBC cells at 128 px, 23 µm canvas: bundled B3 0.348, ImageNet-B4 0.847.
"""
import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", required=True)
    p.add_argument("--features", required=True, help="features of the same cell table (view 0 is used)")
    p.add_argument("--b4-weights", required=True)
    p.add_argument("--n", type=int, default=1200)
    args = p.parse_args()
    import keras
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    d = np.load(args.cells)
    pbc = np.where(d["source"] == "pbc")[0]
    idx = np.sort(np.random.default_rng(0).choice(pbc, min(args.n, len(pbc)), replace=False))
    x, y = d["x"][idx], d["cell_type"][idx]
    size = x.shape[1]
    net = keras.applications.EfficientNetB4(include_top=False, weights=args.b4_weights, input_shape=(size, size, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(net.get_layer("block7a_project_bn").output)
    t0 = time.time()
    b4 = keras.Model(net.input, pooled).predict(x.astype("float32"), batch_size=64, verbose=0)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=0.1))
    b3 = np.load(args.features)[0][idx].astype(np.float32)
    print(f"{len(idx)} PBC cells, {size} px; B4 features in {time.time() - t0:.0f} s")
    print(f"bundled backbone: 8-class accuracy {cross_val_score(probe, b3, y, cv=5).mean():.3f}")
    print(f"ImageNet-B4:      8-class accuracy {cross_val_score(probe, b4, y, cv=5).mean():.3f}")


if __name__ == "__main__":
    main()
