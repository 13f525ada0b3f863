-- wrk script: each request carries the next line of a file in a header,
-- cycling. Arguments (after --): FILE HEADER [PREFIX] [STOP_AFTER]
-- STOP_AFTER > 0 stops the thread after that many responses.
local values, i, header, prefix, stop_after, seen = {}, 0, nil, "", 0, 0
function init(args)
    for line in io.lines(args[1]) do
        if #line > 0 then values[#values + 1] = line end
    end
    header = args[2]
    prefix = args[3] or ""
    stop_after = tonumber(args[4] or "0") or 0
end
function request()
    i = i % #values + 1
    return wrk.format(nil, nil, { [header] = prefix .. values[i] })
end
function response(status, headers, body)
    if stop_after > 0 then
        seen = seen + 1
        if seen >= stop_after then wrk.thread:stop() end
    end
end
