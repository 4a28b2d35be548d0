"""The commands besides the window. `leukviewer batch`, `leukviewer report` and the others `leukviewer --help`
lists, an archive of cases (locally or on Ray), and the installation self-test (`--self-test`, `--smoke-test`);
`leukviewer/__main__.py` dispatches to them.

For Research Use Only. Not for use in diagnostic procedures.
"""
