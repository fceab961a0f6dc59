"""Sub-commands of the deepfake-detector CLI, one module each."""
