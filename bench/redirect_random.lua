-- redirect_random.lua: wrk script for the big redirect table. Each request
-- asks for a random code c0000000..c(ROWS-1) (ROWS env var, default 1e6), so
-- lookups land all over the table rather than on one hot slot. The requests
-- are formatted once in init (SAMPLE of them, default 65536) and replayed in
-- turn, so that building them costs the client nothing during the run.
local rows = tonumber(os.getenv("ROWS") or "1000000")
local sample = tonumber(os.getenv("SAMPLE") or "65536")
local reqs, n, i = {}, 0, 0
init = function(args)
  math.randomseed(os.time())
  for k = 1, sample do
    reqs[k] = wrk.format(nil, string.format("/r/c%07d", math.random(0, rows - 1)))
  end
  n = sample
end
request = function()
  i = i % n + 1
  return reqs[i]
end
