"""Calibration of a user's own camera: sensor noise from raw files, the lens from chart
captures (``residual-train calibrate noise|lens``; docs/your-camera.md).

Modules, one job each (pure functions with units and shapes in their docstrings):

* :mod:`~data_gen.calibrate.frames`: raw files -> frames grouped by ISO, checked, sorted
  into dark frames and lit frames, exposure levels;
* :mod:`~data_gen.calibrate.photon_transfer`: mean-variance from frame pairs (EMVA 1288);
* :mod:`~data_gen.calibrate.single_frame`: ``σ² = A·v + B`` from one raw of a scene with
  smooth regions (Foi et al. 2008);
* :mod:`~data_gen.calibrate.fit`: the weighted, robust line fit they share;
* :mod:`~data_gen.calibrate.dark`: dark-frame statistics (read / row noise, Tukey-λ
  shape, dark shading, bad pixels, black-level error; PMN / ELD);
* :mod:`~data_gen.calibrate.noise`: the ``calibrate noise`` command and its files;
* :mod:`~data_gen.calibrate.sfr`: slanted-edge ESF -> LSF -> SFR, MTF50 (ISO 12233);
* :mod:`~data_gen.calibrate.chart`: checkerboard corners, lattice, chart geometry;
* :mod:`~data_gen.calibrate.distortion`: radial distortion fit (the project's model);
* :mod:`~data_gen.calibrate.psf`: a PSF per position from the chart image;
* :mod:`~data_gen.calibrate.lens`: the ``calibrate lens`` command and its files;
* :mod:`~data_gen.calibrate.page`: the HTML reports;
* :mod:`~data_gen.calibrate.compare`: against references (darktable, a PSF map);
* :mod:`~data_gen.calibrate.synthetic`: synthetic raws and chart captures with known
  noise and PSFs, for the tests and benchmarks.
"""
