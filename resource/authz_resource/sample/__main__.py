"""``python -m authz_resource.sample``: the same command as ``authz-sample-api``."""

from authz_resource.sample.cli import sample_api

sample_api(prog_name="authz-sample-api")
