"""memrepro: reproduce the published benchmarks of memory-augmented neural networks."""

__version__ = "0.1.0"
