"""How requests reach Triton: the sans-IO core (flows of Rpc/Sleep), its blocking and asyncio drivers, and shared-memory regions."""
