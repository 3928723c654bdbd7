"""The model rollout's steps (``statemachine/model_rollout.asl.json``): ``steps`` begins a
rollout (verify, mark ``embedding``, start dual writes), promotes a candidate the index pipeline
published, or rejects one; ``contracts`` holds the payloads between the states."""
