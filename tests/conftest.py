import sys
from pathlib import Path

# Make tests/fakes.py importable as `fakes` from every test module.
sys.path.insert(0, str(Path(__file__).resolve().parent))
