"""Paper mode: the dissertation's matrix of architectures and seeds, its statistics and its report."""
