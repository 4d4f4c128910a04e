"""Building StaX variants from a recipe (issue 18): :mod:`.run` plans and builds,
:mod:`.builders` runs the builder (``ch-image``; plug-ins in ``jupyter_stax.builders``),
:mod:`.bases` finds local bases, :mod:`.outputs` writes labelled images, :mod:`.catalogue` adds
them to a catalog file, :mod:`.jobs` runs builds in the background for the REST API."""
