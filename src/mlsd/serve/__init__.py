"""Serve: a model artifact behind a REST API.

:func:`create_app` builds a FastAPI app from one artifact: ``POST /predict``
validates raw rows against the artifact's input schema (422 naming the field on
error) and scores them with the same feature ``apply`` and model as batch scoring;
``/health``, ``/ready`` and ``/model`` tell whether it is alive, loaded, and which
version with which lineage. Every response carries the model version.
"""

from ._app import create_app, request_model, rows_to_arrow

__all__ = ["create_app", "request_model", "rows_to_arrow"]
