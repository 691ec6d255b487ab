package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"plane"
)

var _ plane.DroneService = (*DB)(nil)

const droneColumns = `id, address, proxy_address, version, protocol_version, status, draining,
	capacity, backends, cpu_percent, memory_bytes, images, cert_not_after, cert_error, proxy_error, last_heartbeat, created_at`

// UpsertDrone records a heartbeat: it creates the drone or updates every
// field but CreatedAt, which it sets on d. A zero LastHeartbeat is now; an
// empty Status follows Draining.
func (db *DB) UpsertDrone(ctx context.Context, d *plane.Drone) error {
	if d.ID == "" {
		return plane.FieldErrorf("id", "is required")
	}
	if d.Status == "" {
		d.Status = plane.DroneReady
		if d.Draining {
			d.Status = plane.DroneDraining
		}
	}
	if !d.Status.Valid() {
		return plane.FieldErrorf("status", "unknown drone status %q", d.Status)
	}
	images := d.Images
	if images == nil {
		images = []string{}
	}
	data, err := json.Marshal(images)
	if err != nil {
		return fmt.Errorf("upsert drone %q: marshal images: %w", d.ID, err)
	}
	beat := orNow(d.LastHeartbeat)
	var certNotAfter sql.NullInt64
	if d.CertNotAfter != nil {
		certNotAfter = sql.NullInt64{Int64: toMS(*d.CertNotAfter), Valid: true}
	}
	var created int64
	err = db.write.QueryRowContext(ctx, `
		INSERT INTO drones (id, address, proxy_address, version, protocol_version, status, draining,
			capacity, backends, cpu_percent, memory_bytes, images, cert_not_after, cert_error, proxy_error, last_heartbeat, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET
			address = excluded.address, proxy_address = excluded.proxy_address,
			version = excluded.version, protocol_version = excluded.protocol_version,
			status = excluded.status, draining = excluded.draining, capacity = excluded.capacity,
			backends = excluded.backends, cpu_percent = excluded.cpu_percent,
			memory_bytes = excluded.memory_bytes, images = excluded.images,
			cert_not_after = excluded.cert_not_after, cert_error = excluded.cert_error,
			proxy_error = excluded.proxy_error,
			last_heartbeat = excluded.last_heartbeat
		RETURNING created_at`,
		d.ID, d.Address, d.ProxyAddress, d.Version, d.ProtocolVersion, d.Status, d.Draining,
		d.Capacity, d.Backends, d.CPUPercent, int64(d.MemoryBytes), string(data), certNotAfter, d.CertError, d.ProxyError, toMS(beat), toMS(now()),
	).Scan(&created)
	if err != nil {
		return fmt.Errorf("upsert drone %q: %w", d.ID, err)
	}
	d.LastHeartbeat, d.CreatedAt = beat, fromMS(created)
	return nil
}

// FindDroneByID returns the drone with id.
func (db *DB) FindDroneByID(ctx context.Context, id string) (*plane.Drone, error) {
	d, err := scanDrone(db.read.QueryRowContext(ctx, `SELECT `+droneColumns+` FROM drones WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, plane.Errorf(plane.ENOTFOUND, "drone %q not found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("find drone %q: %w", id, err)
	}
	return d, nil
}

// FindDrones returns every drone ever seen, by ID.
func (db *DB) FindDrones(ctx context.Context) ([]*plane.Drone, error) {
	drones, err := queryAll(ctx, db.read, scanDrone, `SELECT `+droneColumns+` FROM drones ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("find drones: %w", err)
	}
	return drones, nil
}

// SetDroneStatus sets a drone's status until its next heartbeat.
func (db *DB) SetDroneStatus(ctx context.Context, id string, status plane.DroneStatus) error {
	if !status.Valid() {
		return plane.FieldErrorf("status", "unknown drone status %q", status)
	}
	res, err := db.write.ExecContext(ctx, `UPDATE drones SET status = ? WHERE id = ?`, status, id)
	if err != nil {
		return fmt.Errorf("set drone %q status: %w", id, err)
	}
	return rowAffected(res, "drone %q not found", id)
}

// SetDroneDraining records a drain (or its end) that the drone acknowledged,
// until its next heartbeat says the same. The status follows as UpsertDrone
// would set it, but only between ready and draining: a lost or stopped drone
// stays so until it beats again.
func (db *DB) SetDroneDraining(ctx context.Context, id string, draining bool) error {
	status := plane.DroneReady
	if draining {
		status = plane.DroneDraining
	}
	res, err := db.write.ExecContext(ctx, `
		UPDATE drones SET draining = ?,
			status = CASE WHEN status IN (?, ?) THEN ? ELSE status END
		WHERE id = ?`,
		draining, plane.DroneReady, plane.DroneDraining, status, id)
	if err != nil {
		return fmt.Errorf("set drone %q draining: %w", id, err)
	}
	return rowAffected(res, "drone %q not found", id)
}

func scanDrone(s scanner) (*plane.Drone, error) {
	var d plane.Drone
	var memory, beat, created int64
	var images string
	var certNotAfter sql.NullInt64
	if err := s.Scan(&d.ID, &d.Address, &d.ProxyAddress, &d.Version, &d.ProtocolVersion, &d.Status, &d.Draining,
		&d.Capacity, &d.Backends, &d.CPUPercent, &memory, &images, &certNotAfter, &d.CertError, &d.ProxyError, &beat, &created); err != nil {
		return nil, err
	}
	if certNotAfter.Valid {
		t := fromMS(certNotAfter.Int64)
		d.CertNotAfter = &t
	}
	d.Images = []string{}
	if err := json.Unmarshal([]byte(images), &d.Images); err != nil {
		return nil, fmt.Errorf("unmarshal images: %w", err)
	}
	// Stored as int64: sqlite has no unsigned integers, and no machine has 8 EiB.
	d.MemoryBytes = uint64(memory)
	d.LastHeartbeat, d.CreatedAt = fromMS(beat), fromMS(created)
	return &d, nil
}
