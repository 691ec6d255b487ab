module plane

go 1.26.0
