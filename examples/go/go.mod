module github.com/felix-rs/felix/examples/go

go 1.22

require github.com/felix-rs/felix/bindings/go v0.0.0

replace github.com/felix-rs/felix/bindings/go => ../../bindings/go
