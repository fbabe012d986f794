"""The home: bidding agents, forecasts and Peer Bank inventory control."""
