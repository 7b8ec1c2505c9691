-- catgad bench http: one CreateOrder per request, each with an order id of its own
-- (a prefix per wrk run, then a counter), the body the example's schema asks for.
local counter = 0
math.randomseed(os.time())
local prefix = string.format("%x-%x", os.time(), math.random(1, 2147483647))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  counter = counter + 1
  local body = '{"order_id":"' .. prefix .. '-' .. counter .. '","customer":"customer-'
    .. (counter % 100) .. '","items":[{"sku":"A-1","qty":2,"price":1250},'
    .. '{"sku":"B-2","qty":1,"price":999}]}'
  return wrk.format(nil, "/commands/CreateOrder", nil, body)
end
