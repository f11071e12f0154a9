"""The document camera (高拍仪): find the page, correct it, judge its quality, capture it.

``camera`` (OpenCV capture with a grabber thread, modes, reconnection), ``detect`` (the page
quadrilateral: empty-mat reference, edges, brightness; scored candidates; refined corners),
``geometry`` (quads, IoU, page kinds), ``quality`` (gates with one sentence each for the
citizen), ``autocapture`` (stable and passing means capture, once), ``enhance`` (perspective
correction, upright, output modes), ``material`` (JPEG pages and a PDF per material),
``synthetic`` (a SIMULATED document camera with ground truth) and ``cli``.
"""
