"""Capacity-planning notebooks, their load generators and the analysis code they share."""
