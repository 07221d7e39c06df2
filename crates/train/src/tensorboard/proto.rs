//! The protobuf messages of TensorBoard event files, written by hand as
//! `prost` structs. Field numbers are those of TensorFlow's
//! `tensorflow/core/util/event.proto` and `tensorflow/core/framework/summary.proto`
//! (as in TensorBoard's `tensorboard/compat/proto`); only the fields and oneof
//! cases this crate writes are modelled, the others are skipped when decoding.

use prost::Message;

/// One record of an event file (`tensorflow.Event` of `event.proto`).
#[derive(Clone, PartialEq, Message)]
pub struct Event {
    /// Seconds since the Unix epoch when the event was written.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// Training step the event belongs to (our `u64` steps, stored as `int64`).
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// What the event carries; `None` for kinds we do not model (graphs, ...).
    #[prost(oneof = "event::What", tags = "3, 5, 7")]
    pub what: Option<event::What>,
}

/// Nested types of [`Event`].
pub mod event {
    /// The `oneof what` of `Event` (the kinds this module writes).
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum What {
        /// First event of a file: [`crate::tensorboard::FILE_VERSION`].
        #[prost(string, tag = "3")]
        FileVersion(String),
        /// Summary values (scalars, images, histograms).
        #[prost(message, tag = "5")]
        Summary(super::Summary),
        /// Session start/stop/checkpoint marker.
        #[prost(message, tag = "7")]
        SessionLog(super::SessionLog),
    }
}

/// A set of tagged values (`tensorflow.Summary`); we write one value per event.
#[derive(Clone, PartialEq, Message)]
pub struct Summary {
    /// The values, each with its tag.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<summary::Value>,
}

/// Nested types of [`Summary`].
pub mod summary {
    /// An encoded image (`Summary.Image`).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Image {
        /// Height in pixels.
        #[prost(int32, tag = "1")]
        pub height: i32,
        /// Width in pixels.
        #[prost(int32, tag = "2")]
        pub width: i32,
        /// Channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA.
        #[prost(int32, tag = "3")]
        pub colorspace: i32,
        /// The image file bytes (PNG here).
        #[prost(bytes = "vec", tag = "4")]
        pub encoded_image_string: Vec<u8>,
    }

    /// One tagged value (`Summary.Value`).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Value {
        /// Name of the series, e.g. `"loss/train"` (`/` groups in TensorBoard).
        #[prost(string, tag = "1")]
        pub tag: String,
        /// Plugin metadata; not written for the legacy kinds used here.
        #[prost(message, optional, tag = "9")]
        pub metadata: Option<super::SummaryMetadata>,
        /// The value itself.
        #[prost(oneof = "value::Value", tags = "2, 4, 5")]
        pub value: Option<value::Value>,
    }

    /// Nested types of [`Value`].
    pub mod value {
        /// The `oneof value` of `Summary.Value` (the kinds this module writes).
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            /// A scalar (`float`: f32 precision).
            #[prost(float, tag = "2")]
            SimpleValue(f32),
            /// An encoded image.
            #[prost(message, tag = "4")]
            Image(super::Image),
            /// A histogram.
            #[prost(message, tag = "5")]
            Histo(super::super::HistogramProto),
        }
    }
}

/// Which plugin owns a summary value (`SummaryMetadata`).
#[derive(Clone, PartialEq, Message)]
pub struct SummaryMetadata {
    /// Plugin name and plugin-specific content.
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
    /// Name shown instead of the tag.
    #[prost(string, tag = "2")]
    pub display_name: String,
    /// Longer description (Markdown).
    #[prost(string, tag = "3")]
    pub summary_description: String,
}

/// `SummaryMetadata.PluginData`.
#[derive(Clone, PartialEq, Message)]
pub struct PluginData {
    /// E.g. `"scalars"`, `"images"`, `"histograms"`.
    #[prost(string, tag = "1")]
    pub plugin_name: String,
    /// Plugin-specific serialized content.
    #[prost(bytes = "vec", tag = "2")]
    pub content: Vec<u8>,
}

/// A histogram (`tensorflow.HistogramProto`). Bucket `i` counts the values
/// in `[bucket_limit[i-1], bucket_limit[i])`, the first one from `min`.
#[derive(Clone, PartialEq, Message)]
pub struct HistogramProto {
    /// Smallest value counted.
    #[prost(double, tag = "1")]
    pub min: f64,
    /// Largest value counted.
    #[prost(double, tag = "2")]
    pub max: f64,
    /// Number of values counted.
    #[prost(double, tag = "3")]
    pub num: f64,
    /// Sum of the values counted.
    #[prost(double, tag = "4")]
    pub sum: f64,
    /// Sum of their squares.
    #[prost(double, tag = "5")]
    pub sum_squares: f64,
    /// Right edges of the buckets, increasing (packed).
    #[prost(double, repeated, tag = "6")]
    pub bucket_limit: Vec<f64>,
    /// Count of each bucket (packed), as long as `bucket_limit`.
    #[prost(double, repeated, tag = "7")]
    pub bucket: Vec<f64>,
}

/// A session marker (`tensorflow.SessionLog`).
#[derive(Clone, PartialEq, Message)]
pub struct SessionLog {
    /// A [`SessionStatus`] as `i32`.
    #[prost(enumeration = "SessionStatus", tag = "1")]
    pub status: i32,
    /// Checkpoint path, for `Checkpoint`.
    #[prost(string, tag = "2")]
    pub checkpoint_path: String,
    /// Free-form message.
    #[prost(string, tag = "3")]
    pub msg: String,
}

/// `SessionLog.SessionStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SessionStatus {
    /// Not set.
    StatusUnspecified = 0,
    /// A (re)start: TensorBoard drops earlier events with `step >=` this one.
    Start = 1,
    /// The session stopped.
    Stop = 2,
    /// A checkpoint was written.
    Checkpoint = 3,
}
