"""The search service: which training configuration colorizes best, found with Ray Tune.

One trial = one configuration scored by k-fold cross-validation on the train+validation
photos (`colorize.tune.trainable`); Optuna's TPE proposes configurations from a search space
(`colorize.tune.search_space`), ASHA stops the poor ones early on the cross-validated mean
validation SSIM, and `colorize.tune.results` writes the leaderboard. `colorize.tune.service.run_tuning`
runs it all; `colorize tune` (colorize/cli/tune.py) is its command line.
"""
