-- claim: ARGV[3] gid, [4] topic generation, [5] consumer, [6] most
-- deliveries, [7] about this many bytes, [8] hints (chunks the caller
-- holds, see parse_hints). Claims for the consumer (see claiming.lua). Returns the claim's answer, {'GONE'} or {'NOCONSUMER'}.
local G = load_group(ARGV[3], ARGV[4])
if not G then return {'GONE'} end
local out = claim(G, ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), now_us(), parse_hints(ARGV[8]))
if not out then return {'NOCONSUMER'} end
save_group(G, '')
wake(G)
claim_next_wake(G, out)
return out
