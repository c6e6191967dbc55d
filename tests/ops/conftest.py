import os
import sys

# tests/ (firmware.harness, the shared helpers) importable from tests/ops
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
