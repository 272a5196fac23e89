module fib-rpc.local/e2e/probe

go 1.25
