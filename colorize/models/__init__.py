"""Models that ship with colorize (see MODEL_CARD.md): `colorize predict pretrained ...`,
`colorize serve pretrained` and `colorize fit --init pretrained` find them by name
(colorize.artifact.model_dir)."""
