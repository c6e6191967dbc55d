"""The fastq application: the command line (cli), demo, explain text, benchmarks. The library never imports it."""
