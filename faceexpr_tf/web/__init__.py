"""The serve mode: the Gradio page and TF Serving's REST API in front of a loaded generator.

Floor 6 (top): may import anything below; nothing imports it but main.py.
"""
