"""The Qt-free engine of distill-gui: models, data, losses, training, runs. Never imports Qt."""
