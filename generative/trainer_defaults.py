"""The trainer settings each model's ``armlab ... train`` command starts from, where they differ from
:class:`generative.training.TrainConfig`'s. Plain dicts in a module that imports nothing, so the command line
reads them without loading torch; the models re-export theirs as ``TRAIN_DEFAULTS``."""

GAN = {"batch_size": 64, "n_samples": 36}  #: `generative.gan.train_gan`
CYCLEGAN = {"batch_size": 4, "ema_decay": 0.999, "n_samples": 32}  #: `generative.cyclegan.train_cyclegan`
DIFFUSION = {"batch_size": 32, "ema_decay": 0.995, "n_samples": 16}  #: `generative.diffusion.train_diffusion`
STACKGAN = {"batch_size": 32, "ema_decay": 0.999, "n_samples": 36}  #: `generative.stackgan.train_stackgan`
