module example.invalid/go-service

go 1.19
