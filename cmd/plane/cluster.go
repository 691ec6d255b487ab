package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"plane"
)

// claimTimeout bounds the claim's round trips to NATS at startup.
const claimTimeout = 15 * time.Second

// clusterClaim is who claims a NATS for which cluster.
type clusterClaim struct {
	Identity plane.ClusterIdentity // from the controller's store
	Host     string                // the controller's host name, for the refusal of others
	DataDir  string                // its data folder (absolute), likewise
	NATSURL  string                // redacted, for messages
	Embedded bool                  // the controller runs this NATS itself, in DataDir
	// Replicas of the claim's bucket: those of the streams.
	Replicas int
	// TakeOver replaces another cluster's claim instead of refusing.
	TakeOver bool
	Logger   *slog.Logger
}

// claimCluster claims this NATS for the store's cluster, and refuses, with a
// *clusterOwnedError, when another cluster holds it: a controller of another
// cluster would reconcile this one's drones against its own store and end
// every backend they run. It only reads and writes the claim's bucket, so
// that a refused controller leaves the NATS as it found it.
func claimCluster(ctx context.Context, nc *nats.Conn, cl clusterClaim) (plane.ClusterClaim, error) {
	ctx, cancel := context.WithTimeout(ctx, claimTimeout)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		return plane.ClusterClaim{}, fmt.Errorf("claim cluster: jetstream: %w", err)
	}
	kv, err := openClusterBucket(ctx, js, cl.Replicas)
	if err != nil {
		return plane.ClusterClaim{}, fmt.Errorf("claim cluster: %w", err)
	}
	mine := plane.ClusterClaim{
		ID: cl.Identity.ID, CreatedAt: cl.Identity.CreatedAt, ClaimedAt: time.Now().UTC(),
		Host: cl.Host, DataDir: cl.DataDir,
	}
	if mine.Validate() != nil {
		// A data folder with a newline in its name, say: every controller
		// must read the claim, this one's fellows too.
		mine.Host, mine.DataDir = "", ""
	}
	data, err := json.Marshal(mine)
	if err != nil {
		return plane.ClusterClaim{}, fmt.Errorf("claim cluster: %w", err)
	}
	// A claim deleted between Create and Get: try again, three times in all.
	for range 3 {
		if _, err := kv.Create(ctx, plane.ClusterOwnerKey, data); err == nil {
			cl.Logger.Info("claimed NATS for this cluster", "cluster", mine.ID)
			return mine, nil
		} else if !errors.Is(err, jetstream.ErrKeyExists) {
			return plane.ClusterClaim{}, fmt.Errorf("claim cluster: %w", err)
		}
		e, err := kv.Get(ctx, plane.ClusterOwnerKey)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return plane.ClusterClaim{}, fmt.Errorf("claim cluster: read the claim: %w", err)
		}
		owner, err := plane.Decode[plane.ClusterClaim](e.Value())
		if err == nil && owner.ID == mine.ID {
			cl.Logger.Debug("NATS claimed for this cluster", "cluster", owner.ID, "claimed_at", owner.ClaimedAt, "by", owner.Host)
			return owner, nil
		}
		if !cl.TakeOver {
			if err != nil {
				fix := "start with --take-over-cluster to replace it"
				if cl.Embedded {
					fix = "remove " + filepath.Join(cl.DataDir, "nats") + " to start afresh"
				}
				return plane.ClusterClaim{}, fmt.Errorf("NATS at %s holds a claim (bucket %s, key %s) that does not read: %v: refusing to start; %s",
					cl.NATSURL, plane.ClusterBucket, plane.ClusterOwnerKey, err, fix)
			}
			return plane.ClusterClaim{}, &clusterOwnedError{Owner: owner, Claim: cl}
		}
		// The revision makes the take-over lose to a claim written meanwhile.
		if _, err := kv.Update(ctx, plane.ClusterOwnerKey, data, e.Revision()); err != nil {
			return plane.ClusterClaim{}, fmt.Errorf("claim cluster: take over: %w", err)
		}
		cl.Logger.Warn("took NATS over from another cluster: its backends on the drones will be ended as unknown",
			"cluster", mine.ID, "previous_cluster", owner.ID, "previous_claimed_at", owner.ClaimedAt,
			"previous_host", owner.Host, "previous_data_dir", owner.DataDir)
		return mine, nil
	}
	return plane.ClusterClaim{}, errors.New("claim cluster: the claim keeps disappearing; try again")
}

// openClusterBucket opens the claim's bucket, creating it when absent. An
// existing bucket is left as it is: a controller that may be refused
// changes nothing.
func openClusterBucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, plane.ClusterBucket)
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return kv, err
	}
	kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   plane.ClusterBucket,
		History:  1,
		Storage:  jetstream.FileStorage,
		Replicas: replicas,
	})
	if errors.Is(err, jetstream.ErrBucketExists) { // another controller was quicker
		return js.KeyValue(ctx, plane.ClusterBucket)
	}
	return kv, err
}

// clusterOwnedError: the NATS belongs to another cluster than the store.
type clusterOwnedError struct {
	Owner plane.ClusterClaim
	Claim clusterClaim
}

// Error says, in one line, which cluster owns the NATS, when and where it
// was claimed, and how to proceed.
func (e *clusterOwnedError) Error() string {
	o, c := e.Owner, e.Claim
	owner := fmt.Sprintf("cluster %s (made %s, claimed %s by the controller", o.ID,
		o.CreatedAt.UTC().Format(time.RFC3339), o.ClaimedAt.UTC().Format(time.RFC3339))
	if o.Host != "" {
		owner += " on host " + o.Host
	}
	if o.DataDir != "" {
		owner += " with data folder " + o.DataDir
	}
	owner += ")"
	if c.Embedded {
		// plane dev: the NATS store lives in the data folder, next to the
		// controller's; one of them was replaced.
		nats := filepath.Join(c.DataDir, "nats")
		return fmt.Sprintf("the embedded NATS in %s belongs to %s, but %s holds cluster %s: refusing to start, to leave that cluster's drones alone. "+
			"Put back cluster %s's controller.db, or remove %s to start afresh (the backends left on its drones will be ended)",
			nats, owner, filepath.Join(c.DataDir, "controller.db"), c.Identity.ID, o.ID, nats)
	}
	return fmt.Sprintf("NATS at %s belongs to %s, but data folder %s holds cluster %s: refusing to start, to leave that cluster's drones alone. "+
		"Point --data at cluster %s's data folder, or give cluster %s a NATS server or account of its own; "+
		"only if cluster %s is gone for good, start with --take-over-cluster (the backends left on its drones will be ended)",
		c.NATSURL, owner, c.DataDir, c.Identity.ID, o.ID, c.Identity.ID, o.ID)
}
