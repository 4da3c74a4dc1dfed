"""The pipeline's stage scripts (`python -m stages.<name>`): each owns its paths and params section and calls
the library with plain arguments.

Every stage runs in the repository root, as DVC runs it, also when started by hand from elsewhere: the
relative paths in params.yaml and in the manifests (`data/corpus/...`) are taken from there.
"""
import os

from musictag.paths import REPO_ROOT

os.chdir(REPO_ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO/WARNING lines drown the messages that matter
