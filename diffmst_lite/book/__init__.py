"""Notebook helpers, plotting and widgets: the only modules that import IPython, ipywidgets or matplotlib at module level."""

