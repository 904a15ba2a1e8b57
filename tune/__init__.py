"""The search service: which training configuration colorizes best, found with Ray Tune.

One trial = one configuration scored by k-fold cross-validation on the train+validation
photos (`tune.trainable`); Optuna's TPE proposes configurations from a search space
(`tune.search_space`), ASHA stops the poor ones early on the cross-validated mean
validation SSIM, and `tune.results` writes the leaderboard. `tune.service.run_tuning`
runs it all; `colorize tune` (colorize/cli/tune.py) is its command line.
"""
