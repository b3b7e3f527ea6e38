"""Storage on local disk, a shell beside kafkaio/: the model store that versions published
policies (with a lock per slot and a manifest), and durable writes (write to a temporary
file, fsync, rename) that a crash cannot leave half done."""
