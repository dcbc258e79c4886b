"""Uploads: multipart bodies mixing form fields and files, read within a size limit."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import request
from flask_smorest import abort
from flask_smorest.fields import Upload
from marshmallow import ValidationError
from webargs.multidictproxy import MultiDictProxy
from werkzeug.datastructures import CombinedMultiDict, FileStorage

from ..extensions import Blueprint, StorableParser

# Room for the multipart framing and the form fields around a file.
FRAMING = 64 * 1024


class _Parser(StorableParser):
    """The API's parser (storable text, JSON bodies as every blueprint reads them) whose
    "form" location holds a form's fields and its files together (errors are still
    reported field by field under "form")."""

    __location_map__ = {**StorableParser.__location_map__, "form": "load_form_and_files"}

    def load_form_and_files(self, req: Any, schema: Any) -> MultiDictProxy:
        return MultiDictProxy(CombinedMultiDict([req.form, req.files]), schema)


class FileUpload(Upload):
    """A file of a multipart body. The form's fields and files share one namespace
    here, so a text field sent under a file's name is refused (422), not read as one."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, FileStorage):
            raise ValidationError("Send a file here, not a text field.")
        return value


class UploadBlueprint(Blueprint):
    """A blueprint whose `location="form"` arguments are a multipart/form-data body of
    fields and files (one request body in the OpenAPI description)."""

    ARGUMENTS_PARSER = _Parser()
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING = {
        **Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "form": "multipart/form-data",
    }


def body_limit(setting: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Let this view's body be as large as the file limit in config `setting` allows
    (plus framing), instead of MAX_CONTENT_LENGTH; larger bodies are 413 before any of
    it is parsed. Place it above @blp.arguments."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from flask import current_app

            request.max_content_length = int(current_app.config[setting]) + FRAMING
            return view(*args, **kwargs)

        return wrapper

    return decorator


def read_upload(storage: FileStorage, limit: int, what: str) -> bytes:
    """The file's bytes, or 413 if it is larger than `limit`."""
    data = storage.stream.read(limit + 1)
    if len(data) > limit:
        abort(413, message=f"The {what} is larger than {_size(limit)}; send a smaller one.")
    return data


def _size(limit: int) -> str:
    if limit >= 1024 * 1024 and limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MB"
    if limit >= 1024 and limit % 1024 == 0:
        return f"{limit // 1024} kB"
    return f"{limit} bytes"
