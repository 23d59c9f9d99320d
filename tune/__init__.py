"""Ray Tune sweeps and ablations of MIX'EM: sweep.py (command line and Ray glue), space.py (the search
space), results.py (Parquet), ablate.py (the paper's ablation presets x seeds)."""
