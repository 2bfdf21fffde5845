module github.com/felix-rs/felix/bindings/go

go 1.22
