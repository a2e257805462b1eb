"""Benchmarks and GPU checks, all reached through ``armlab bench NAME`` (each takes ``--json``).

* `env`, `feasibility`, `dataset`: the simulator's speed and the task's solvability;
* `gan`, `cyclegan`, `diffusion`: the generative models' targets, measured;
* `gpu_generative`, `gpu_diffusion`: the prepared checks for a lent GPU (``armlab bench gpu-generative``,
  ``armlab bench gpu-diffusion``), runnable on the CPU as smoke tests.

Each module has ``add_arguments(parser)`` and ``run(args)``, or ``main(argv)`` for the GPU checks.
"""
