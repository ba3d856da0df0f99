"""The JoeyNMT side-by-side benchmark (`make peer-bench`, scripts/peer_bench.py): a lab script outside the wheel."""
