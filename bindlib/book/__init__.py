"""The book layer: charts, widgets, figures, findings (verdicts and tables computed from results files), exercise
checkers and the student edition. It may import all of bindlib; nothing imports it."""
