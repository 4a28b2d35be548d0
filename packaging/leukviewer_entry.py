"""The frozen app's entry point (PyInstaller runs this file as ``__main__``; the package itself uses relative
imports, so it cannot be the script). Everything else happens in ``leukviewer.__main__.main``."""
import sys

from leukviewer.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
