"""fastq bench: the measurement code shared by `fastq bench` and bench/ (pytest-benchmark)."""
