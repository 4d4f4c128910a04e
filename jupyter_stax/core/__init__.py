"""The pure domain of jupyter_stax: models, states, errors, DAG checks and script rendering.

Nothing here imports jupyter_server, tornado, IPython, ipywidgets, psij or sqlite3.
"""
