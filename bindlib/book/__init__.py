"""The book layer: charts, widgets and exercise checkers. It may import all of bindlib; nothing imports it."""
