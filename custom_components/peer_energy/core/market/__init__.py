"""The market: orders, slots, the double auction (clearing), fairness and scarcity rules."""
