package store

// FailWrites makes every commit of st fail with err (nil: writes work again), as a full
// disk or an unreachable database would.
func FailWrites(st *Store, err error) {
	if err == nil {
		st.db.writeFault.Store(nil)
		return
	}
	st.db.writeFault.Store(&err)
}
