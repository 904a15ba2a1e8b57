"""The model on Ray: every module that drives Ray lives here, apart from the model library.

`colorize/` itself (data, model, training, artifact, inference) runs with no Ray at all;
this package runs it on Ray: `ray_session` (joining or starting Ray), `train_driver` and
`train_worker` (Ray Train), `batch_ray` (Ray Data), `jobs` and `serve_submit` (Ray Jobs and
Serve on a cluster), `local_cluster` (a Ray cluster on this machine), `pipeline` (tune,
train, serve in one run), `tracking` (Ray's logger callbacks) and `ray_compat` (the private
Ray names used). `tune/` and `serve/` are Ray's too, as subpackages of their own.
tests/test_architecture.py checks that no module directly under `colorize/` imports Ray.
"""
