"""Plumbing every layer shares, free of the simulator: atomic writes, the dataset format, video files.

Importing ``robot_env.io`` (or any module in it) loads neither PyBullet nor Gymnasium, so
`generative` and the command line use it without dragging the physics along:

* `robot_env.io.atomic`: the one atomic writer (its durability guarantee is stated there).
* `robot_env.io.dataset_format`: the dataset format's version, classes, manifest and layout.
* `robot_env.io.errors`: `ParamError`, a bad value of a named parameter (the CLI names its flag).
* `robot_env.io.hashing`: SHA-256 of bytes and files.
* `robot_env.io.threads`: the one torch thread-count helper.
* `robot_env.io.video`: WebM / MP4 / GIF writers, tiling and overlays.
"""
