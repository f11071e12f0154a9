"""The document camera (高拍仪): find the page, correct it, judge its quality, capture it.

``camera`` (OpenCV capture with a grabber thread, modes, reconnection), ``detect`` (the page
quadrilateral: candidates from the empty-mat reference, log-image edges and brightness, scored
by a shadow-invariant step along each side; grown to the outermost paper edge; refined),
``geometry`` (quads, IoU, page kinds), ``quality`` (gates with one sentence each for the
citizen), ``autocapture`` (stable and passing means capture, once), ``enhance`` (perspective
correction, upright, output modes), ``material`` (JPEG pages and a PDF per material),
``synthetic`` (a SIMULATED document camera with ground truth), ``scenes2`` (a second,
independent SIMULATED scene generator: a lit room with real shadows, for held-out tests) and
``cli``.
"""
