"""Models: the pixel study (`study`), server-side classifiers (`classify`), object detection (`detect`)."""
