"""The benchmark mode: training and inference speed, side by side with PyTorch, TFLite
latency and profiles, printed and appended to docs/benchmarks.md.

Floor 6 (top): may import anything below; nothing imports it but main.py.
"""
