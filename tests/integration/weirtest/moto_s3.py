"""Runs moto's server with one fix to its SigV4 check, for the S3 store tests.

moto recomputes each request's signature with botocore's signer, but from the request URL after
werkzeug decoded it: "?delimiter=%2F" becomes "?delimiter=/", "a%2Bb" becomes "a+b", so every
ListObjectsV2 with a delimiter and every key outside [A-Za-z0-9 ./_-] fails the check although
it was signed right (boto3's own requests fail the same way). Here the check sees the request
target as it came over the wire (werkzeug's RAW_URI); the verification itself is moto's and
botocore's, unchanged.

Usage: python3 moto_s3.py -H ADDRESS -p PORT   (with moto and boto3 importable)
"""

import sys
from urllib.parse import urlsplit

from moto.core import authorization, responses

_setup_class = responses.BaseResponse.setup_class


def _setup_class_keeping_raw_uri(self, request, full_url, headers, *args, **kwargs):
    result = _setup_class(self, request, full_url, headers, *args, **kwargs)
    environ = getattr(request, "environ", None)
    self._weir_raw_uri = environ.get("RAW_URI") if environ else None
    return result


_authenticate = authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action


def _authenticate_raw(self, iam_request_cls, resource="*"):
    raw = getattr(self, "_weir_raw_uri", None)
    if not raw:
        return _authenticate(self, iam_request_cls, resource)
    decoded = self.uri
    parts = urlsplit(decoded)
    self.uri = f"{parts.scheme}://{parts.netloc}{raw}"
    try:
        return _authenticate(self, iam_request_cls, resource)
    finally:
        self.uri = decoded


responses.BaseResponse.setup_class = _setup_class_keeping_raw_uri
authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action = _authenticate_raw

if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])
