"""The Gradio app of the Spectral Bias Lab: UI wiring (ui.py), events, live runs (session.py), plots, downloads."""
