"""Matplotlib figures over the results of :mod:`drkd_viz.analysis`. Every function returns a
``matplotlib.figure.Figure`` built without pyplot's global state, so the figures work headless, in notebooks and in
Streamlit (``st.pyplot(fig)``); :func:`drkd_viz.viz.common.figure_png` turns one into PNG bytes for downloads.
"""
