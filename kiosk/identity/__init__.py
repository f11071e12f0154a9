"""Person-ID verification (人证核验): the live face against the card photo, with liveness.

``engine`` (the face engine behind a small interface; dlib through face_recognition),
``quality`` (gates on the live frame, one sentence each for the citizen), ``verify`` (card
preparation, best-of-several live frames, the match / review / no-match decision),
``liveness`` (an active head-turn / blink challenge plus passive evidence), ``record`` (what
goes into the case) and ``cli`` (``tongban face``).
"""
